"""Spiking self-attention: Spikformer's SSA and the Spike-driven Transformer's SDSA.

Both take token sequences ``[T, B, N, D]`` (``N`` tokens of ``D`` features per step)
and attend without softmax, so that the products are between spikes:

* :class:`SpikingSelfAttention` (Zhou et al., ICLR 2023): spike ``Q``, ``K``, ``V``
  (linear, batch norm, spiking neuron each), ``Q Kᵀ V · s`` per head, a spiking neuron
  (threshold 0.5), then a linear projection, batch norm and a spiking neuron: spikes
  in, spikes out.
* :class:`SpikeDrivenSelfAttention` (Yao et al., NeurIPS 2023): ``Q ⊙ SN(Σ_tokens K ⊙ V)``
  per head (only masks and additions), in the membrane-shortcut style of its paper: a
  spiking neuron first turns the (real-valued) residual stream into spikes, and the
  output is the projection's batch-normalised values, to be added to that stream.
  ``erode=True`` adds the 3x3 max-pools ("Erode") of the authors' DVS variant.

The neurons are spikeflow neurons built by name (``neuron="lif"``, the papers' LIF with
τ = 2 and a detached reset by default) and run in multi-step mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, ShapeError

__all__ = [
    "FeatureBatchNorm",
    "SpikeDrivenSelfAttention",
    "SpikingQKV",
    "SpikingSelfAttention",
    "check_tokens",
    "erode_grid",
    "erode_heads",
    "merge_heads",
]

#: The papers' neuron: LIF, τ = 2, reset detached from the graph.
ATTENTION_NEURON_DEFAULTS: dict[str, Any] = {"tau": 2.0, "detach_reset": True}


class FeatureBatchNorm(nn.BatchNorm1d):
    """Batch norm over the last dim of ``[..., D]`` (statistics over all other dims)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """``[..., D]`` -> ``[..., D]``."""
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _neurons(neuron: Any, neuron_kwargs: Mapping[str, Any] | None) -> Any:
    from spikeflow.models.common import NeuronFactory

    if neuron_kwargs is not None and not isinstance(neuron_kwargs, Mapping):
        raise ConfigurationError(
            f"neuron_kwargs must be a dict, got {type(neuron_kwargs).__name__}"
        )
    # A threshold a layer sets for one of its neurons (the attention neuron's 0.5)
    # wins over neuron_kwargs, which set every neuron.
    return lambda **extra: NeuronFactory(
        neuron, {**(neuron_kwargs or {}), **extra}, defaults=ATTENTION_NEURON_DEFAULTS
    )()


def _check_sizes(owner: str, dim: int, num_heads: int) -> None:
    """Raise a ConfigurationError naming ``owner`` unless ``dim`` and ``num_heads`` are
    positive integers and ``dim`` is a multiple of ``num_heads``."""
    for name, value in (("dim", dim), ("num_heads", num_heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{owner}: {name} must be a positive integer, got {value!r}")
    if dim % num_heads:
        raise ConfigurationError(
            f"{owner}: dim ({dim}) must be a multiple of num_heads ({num_heads})"
        )


def check_tokens(owner: str, x: Tensor, dim: int) -> None:
    """Raise unless ``x`` is a tensor of tokens ``[T, B, N, D]`` with ``D = dim``.

    Raises:
        ShapeError: not a tensor, not 4-d, or another last dim (the message names
            ``owner``, ``dim`` and the shape found).
    """
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[-1] != dim:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"{owner}: expects tokens [T, B, N, D] with D = {dim}, got {shape}")


class SpikingQKV(nn.Module):
    """Spike ``Q``, ``K``, ``V`` ``[T, B, H, N, D/H]`` from tokens ``[T, B, N, D]``: a
    linear layer (no bias), a batch norm and a spiking neuron each, split into heads.

    The part shared by :class:`SpikingSelfAttention`, :class:`SpikeDrivenSelfAttention`
    and the model zoo's attentions (Max-Former's CIFAR attention); its modules are
    ``linear.i``, ``norm.i`` and ``neuron.i`` for ``Q``, ``K``, ``V`` (``i`` = 0, 1, 2).

    Args:
        dim: features per token ``D``.
        num_heads: heads ``H``, a divisor of ``D``.
        make_neuron: called with no argument, a fresh multi-step neuron (three calls).

    Raises:
        ConfigurationError: ``dim`` or ``num_heads`` not a positive integer, or ``H``
            not dividing ``D``; ShapeError (at the call): not tokens ``[T, B, N, D]``.
    """

    def __init__(self, dim: int, num_heads: int, make_neuron: Callable[[], nn.Module]) -> None:
        super().__init__()
        _check_sizes("SpikingQKV", dim, num_heads)
        self.dim, self.num_heads = dim, num_heads
        self.linear = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.norm = nn.ModuleList(FeatureBatchNorm(dim) for _ in range(3))
        self.neuron = nn.ModuleList(make_neuron() for _ in range(3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[T, B, N, D]`` -> spikes ``Q, K, V``, each ``[T, B, H, N, D/H]``."""
        check_tokens("SpikingQKV", x, self.dim)
        steps, batch, tokens, dim = x.shape
        heads = []
        for linear, norm, neuron in zip(self.linear, self.norm, self.neuron, strict=True):
            s = neuron(norm(linear(x)))
            heads.append(s.reshape(steps, batch, tokens, self.num_heads, dim // self.num_heads)
                         .transpose(2, 3))  # fmt: skip
        return heads[0], heads[1], heads[2]


def merge_heads(x: Tensor) -> Tensor:
    """Heads back into features: ``[T, B, H, N, d]`` -> ``[T, B, N, H·d]``.

    Raises:
        ShapeError: ``x`` is not a 5-d tensor.
    """
    if not isinstance(x, Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"merge_heads: expects heads [T, B, H, N, d], got {shape}")
    steps, batch, heads, tokens, width = x.shape
    return x.transpose(2, 3).reshape(steps, batch, tokens, heads * width)


class SpikingSelfAttention(nn.Module):
    """Spikformer's spiking self-attention, SSA (Zhou et al., ICLR 2023).

    ``Q, K, V = SN(BN(X W_q)), SN(BN(X W_k)), SN(BN(X W_v))`` (spikes), per head
    ``A = Q Kᵀ V · scale`` (no softmax: the products of spikes are non-negative counts;
    computed as ``Q (Kᵀ V)``), then ``SN_attn(A)`` (threshold ``attention_threshold``)
    and ``SN(BN(· W_o))``.

    Args:
        dim: features per token ``D``.
        num_heads: heads ``H`` (``D`` a multiple of ``H``).
        scale: the factor ``s`` (0.125 in the paper).
        attention_threshold: the threshold of the neuron after ``Q Kᵀ V`` (0.5).
        neuron, neuron_kwargs: the spiking neurons (a name, class or factory, as the
            zoo's models take), over the defaults LIF-style ``tau=2``,
            ``detach_reset=True``.

    Input and output ``[T, B, N, D]``; the output is spikes.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        scale: float = 0.125,
        attention_threshold: float = 0.5,
        neuron: Any = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_sizes("SpikingSelfAttention", dim, num_heads)
        make = _neurons(neuron, neuron_kwargs)
        self.dim, self.num_heads, self.scale = dim, num_heads, float(scale)
        self.qkv = SpikingQKV(dim, num_heads, make)
        self.attention_neuron = make(v_threshold=attention_threshold)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.proj_norm = FeatureBatchNorm(dim)
        self.proj_neuron = make()

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, N, D]`` -> spikes ``[T, B, N, D]``."""
        check_tokens("SpikingSelfAttention", x, self.dim)
        q, k, v = self.qkv(x)
        attended = q @ (k.transpose(-2, -1) @ v) * self.scale  # = (Q Kᵀ) V · s
        spikes = self.attention_neuron(merge_heads(attended))
        return self.proj_neuron(self.proj_norm(self.proj(spikes)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, scale={self.scale:g}"


def erode_grid(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """The 3x3 max over each token's neighbours on the ``h x w`` grid of positions, per
    head and channel: heads ``[T, B, H, N, d]`` with ``N = h·w`` tokens in row-major
    order (stride 1, padding that never wins). The Spike-driven Transformer's DVS
    "Erode" of its keys and values, 3x3 spatial windows in its ``[T, B, C, h, w]``
    layout."""
    steps, batch, heads, tokens, width = x.shape
    height, wide = grid
    maps = x.transpose(3, 4).reshape(steps * batch, heads * width, height, wide)
    pooled = F.max_pool2d(maps, 3, stride=1, padding=1)
    return pooled.reshape(steps, batch, heads, width, tokens).transpose(3, 4)


def erode_heads(x: Tensor) -> Tensor:
    """The 3x3 max over (token index, channel within the head) of heads
    ``[T, B, H, N, d]``: neighbouring tokens in their flattened order (a window crosses
    the ends of the grid's rows) and neighbouring channels of the same head. The
    Spike-driven Transformer's DVS "Erode" of ``K ⊙ V`` and of the attention, as the
    authors' code applies its ``MaxPool3d((1, 3, 3))`` to that 5-d layout."""
    steps, batch, heads, tokens, width = x.shape
    flat = x.reshape(steps * batch * heads, 1, tokens, width)
    return F.max_pool2d(flat, 3, stride=1, padding=1).reshape(x.shape)


def _token_grid(owner: str, tokens: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    """``grid`` checked against ``tokens``, or the square grid of ``tokens`` positions."""
    if grid is None:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ShapeError(
                f"{owner}: erode needs the grid of positions (grid=(h, w)) for {tokens} "
                f"tokens, which are not a square"
            )
        return side, side
    sizes_ok = isinstance(grid, tuple | list) and len(grid) == 2
    if not sizes_ok or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid):
        raise ShapeError(f"{owner}: grid must be two positive integers (h, w), got {grid!r}")
    if grid[0] * grid[1] != tokens:
        raise ShapeError(
            f"{owner}: grid {tuple(grid)} has {grid[0] * grid[1]} positions, the input "
            f"{tokens} tokens"
        )
    return int(grid[0]), int(grid[1])


class SpikeDrivenSelfAttention(nn.Module):
    """The Spike-driven Transformer's self-attention, SDSA (Yao et al., NeurIPS 2023).

    ``S = SN_in(X)`` (the residual stream's values to spikes), ``Q, K, V`` spikes from
    ``S`` as in :class:`SpikingSelfAttention`; per head
    ``A = Q ⊙ SN_kv(Σ_tokens K ⊙ V)`` (a mask of ``Q`` by the channels where keys and
    values agree often enough: threshold ``kv_threshold``), then ``BN(A W_o)``: real
    values, added to the residual stream by the block (membrane shortcut).

    With ``erode=True`` (the authors' DVS variant, their ``dvs=True``), ``K`` and ``V``
    are max-pooled over 3x3 neighbourhoods of the grid of positions
    (:func:`erode_grid`), and ``K ⊙ V`` (before the sum) and the attention
    ``Q ⊙ SN_kv(·)`` over 3x3 windows of (token index, channel) per head
    (:func:`erode_heads`), as their code does. The grid is ``forward``'s ``grid``
    (the models pass it), else the square one of ``N`` tokens.

    Args:
        dim, num_heads, neuron, neuron_kwargs: as :class:`SpikingSelfAttention`.
        kv_threshold: the threshold of the neuron on the summed ``K ⊙ V`` (0.5).
        erode: the DVS variant's max-pools (off by default).

    Input ``[T, B, N, D]`` (any real values), output ``[T, B, N, D]`` real values.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        kv_threshold: float = 0.5,
        neuron: Any = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        erode: bool = False,
    ) -> None:
        super().__init__()
        _check_sizes("SpikeDrivenSelfAttention", dim, num_heads)
        if not isinstance(erode, bool):
            raise ConfigurationError(
                f"SpikeDrivenSelfAttention: erode must be True or False, got {erode!r}"
            )
        make = _neurons(neuron, neuron_kwargs)
        self.dim, self.num_heads, self.erode = dim, num_heads, erode
        self.input_neuron = make()
        self.qkv = SpikingQKV(dim, num_heads, make)
        self.kv_neuron = make(v_threshold=kv_threshold)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.proj_norm = FeatureBatchNorm(dim)

    def forward(self, x: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        """``[T, B, N, D]`` -> ``[T, B, N, D]``; ``grid`` ``(h, w)`` (``N = h·w``, the
        tokens in row-major order) is read with ``erode`` only."""
        check_tokens("SpikeDrivenSelfAttention", x, self.dim)
        q, k, v = self.qkv(self.input_neuron(x))
        if not self.erode:
            kv = self.kv_neuron((k * v).sum(dim=-2, keepdim=True))  # [T, B, H, 1, d]
            return self.proj_norm(self.proj(merge_heads(q * kv)))
        grid = _token_grid("SpikeDrivenSelfAttention", x.shape[2], grid)
        k, v = erode_grid(k, grid), erode_grid(v, grid)
        kv = self.kv_neuron(erode_heads(k * v).sum(dim=-2, keepdim=True))
        return self.proj_norm(self.proj(merge_heads(erode_heads(q * kv))))

    def extra_repr(self) -> str:
        erode = ", erode=True" if self.erode else ""
        return f"dim={self.dim}, num_heads={self.num_heads}{erode}"
