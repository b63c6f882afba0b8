"""Q-K attention of QKFormer (Zhou et al., NeurIPS 2024): token- and channel-wise masks.

On tokens ``X`` ``[T, B, N, D]`` (``N`` tokens of ``D`` features per step), with ``H``
heads of ``d = D / H`` features:

    ``Q, K = SN(BN(X W_q)), SN(BN(X W_k))``                      (spikes)
    token:   ``A[n, h] = SN_attn(Σ_{i in head h} Q[n, i])``        one mask per token
    channel: ``A[h, i] = SN_attn(Σ_n Q[n, i])``                    one mask per channel
    ``Y = SN(BN((A ⊙ K) W_o))``                                  (spikes)

Only additions and masks: no ``Q Kᵀ`` product, so the cost is linear in ``N``. The
neurons are spikeflow neurons built by name (``neuron="lif"``: LIF with τ = 2 and a
detached reset, as the paper's) in multi-step mode; ``SN_attn`` has its own threshold
(``attention_threshold``, 0.5).

The parameters carry SpikingJelly 2.0's names and shapes (``qk_conv_bn.0.weight``
``[2D, D, 1]``: the ``Q`` and ``K`` projections stacked, as 1x1 convolutions;
``qk_conv_bn.1``: their batch norm; ``proj_conv_bn.0/1``; one neuron ``qk_lif`` for
``Q`` and ``K``), so its ``state_dict`` loads unchanged. SpikingJelly's layers take
``[T, B, D, N]`` (channels first); these take tokens ``[T, B, N, D]`` as spikeflow's
other attention layers do: the outputs are SpikingJelly's transposed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from spikeflow.base import StepMode, StepModule
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._time import check_step_dims, fold_time
from spikeflow.layers.attention import _check_sizes, _neurons

__all__ = ["ChannelQKAttention", "QKAttention", "TokenQKAttention"]

_QKA_TYPES = ("token", "channel")


def _conv_bn(dim: int, out: int) -> nn.Sequential:
    """A 1x1 convolution (no bias: the batch norm has one) and a batch norm."""
    return nn.Sequential(nn.Conv1d(dim, out, kernel_size=1, bias=False), nn.BatchNorm1d(out))


class QKAttention(StepModule, nn.Module):
    """QKFormer's Q-K attention, token-wise (QKTA) or channel-wise (QKCA).

    ``Q, K = SN(BN(X W_q)), SN(BN(X W_k))``; per head, ``A = SN_attn(Σ Q)`` summed over
    the head's channels (``qka_type="token"``: a mask ``[N, 1]`` per head) or over the
    tokens (``"channel"``: a mask ``[1, d]``); ``Y = SN(BN((A ⊙ K) W_o))``.

    SpikingJelly 2.0's ``layer.QKAttention(dim, num_heads, qka_type, spiking_neuron,
    **kwargs)``: its ``state_dict`` loads, and the outputs and gradients are its own
    (transposed: it takes ``[T, B, D, N]``) with ``neuron`` and ``neuron_kwargs`` in
    place of ``spiking_neuron`` and ``**kwargs``. Two differences, both deliberate:
    the attention neuron's threshold is this layer's ``attention_threshold`` whatever
    ``neuron_kwargs`` say (SpikingJelly's ``v_threshold=...`` sets it too), and the
    defaults (τ = 2, detached reset, threshold 0.5 for ``SN_attn``) hold for any
    ``neuron`` (SpikingJelly drops them all when ``spiking_neuron`` is given, leaving
    the attention neuron at threshold 1 and the resets attached).

    Args:
        dim: features per token ``D``.
        num_heads: heads ``H`` (``D`` a multiple of ``H``).
        qka_type: ``"token"`` or ``"channel"`` (read-only afterwards).
        attention_threshold: the threshold of ``SN_attn`` (0.5).
        neuron, neuron_kwargs: the spiking neurons (a name, class or factory, as the
            zoo's models take), over the defaults ``tau=2``, ``detach_reset=True``.
        step_mode: ``'m'`` (input ``[T, B, N, D]``) or ``'s'`` (one step ``[B, N, D]``;
            the neurons then need ``spikeflow.functional.streaming``). Setting it sets
            the neurons'. In single-step mode a training-mode batch norm uses the
            statistics of one step.

    Input and output ``[T, B, N, D]`` (``[B, N, D]`` in single-step mode); the output
    is spikes.

    Raises:
        ConfigurationError: a bad ``dim``, ``num_heads``, ``qka_type`` or neuron
            argument.
        ShapeError: the input is not ``[T, B, N, D]`` with ``D = dim``.
        DTypeError: the input is not floating-point.
    """

    #: The three neurons follow the layer's step mode.
    step_mode_parts = ("qk_lif", "attn_lif", "proj_lif")

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qka_type: str = "token",
        attention_threshold: float = 0.5,
        neuron: Any = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        _check_sizes(owner, dim, num_heads)
        if qka_type not in _QKA_TYPES:
            raise ConfigurationError(
                f"{owner}: qka_type must be 'token' or 'channel', got {qka_type!r}"
            )
        make = _neurons(neuron, neuron_kwargs)
        self.dim, self.num_heads, self._qka_type = dim, num_heads, qka_type
        self.qk_conv_bn = _conv_bn(dim, 2 * dim)
        self.qk_lif = make()
        self.attn_lif = make(v_threshold=attention_threshold)
        self.proj_conv_bn = _conv_bn(dim, dim)
        self.proj_lif = make()
        self.step_mode = step_mode

    @property
    def qka_type(self) -> str:
        """``"token"`` or ``"channel"``: which mask the layer makes (fixed)."""
        return self._qka_type

    def _linear(self, block: nn.Sequential, x: Tensor) -> Tensor:
        """The 1x1 convolution and batch norm on tokens ``[..., N, D]`` -> ``[..., N, D']``."""
        channels_first = x.transpose(-1, -2)
        if self.step_mode == "m":
            return fold_time(block, channels_first).transpose(-1, -2)
        return block(channels_first).transpose(-1, -2)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, N, D]`` -> spikes ``[T, B, N, D]`` (one step ``[B, N, D]`` in 's')."""
        owner = type(self).__name__
        if not isinstance(x, Tensor):
            raise ShapeError(f"{owner}: expects a tensor of tokens, got {type(x).__name__}")
        if not x.is_floating_point():
            raise DTypeError(f"{owner}: expects floating-point tokens, got dtype {x.dtype}")
        check_step_dims(x, owner, "[B, N, D]", (3, 3), self.step_mode)
        if x.shape[-1] != self.dim:
            raise ShapeError(
                f"{owner}: expects tokens [..., N, D] with D = dim = {self.dim}, got shape "
                f"{tuple(x.shape)}"
            )
        q, k = self.qk_lif(self._linear(self.qk_conv_bn, x)).chunk(2, dim=-1)
        heads = (self.num_heads, self.dim // self.num_heads)
        q, k = q.unflatten(-1, heads), k.unflatten(-1, heads)  # [..., N, H, d]
        if self._qka_type == "token":
            mask = self.attn_lif(q.sum(-1, keepdim=True))  # [..., N, H, 1]
        else:
            mask = self.attn_lif(q.sum(-3, keepdim=True))  # [..., 1, H, d]
        return self.proj_lif(self._linear(self.proj_conv_bn, (mask * k).flatten(-2)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, qka_type={self._qka_type}"


class _FixedQKAttention(QKAttention):
    """:class:`QKAttention` with the ``qka_type`` the subclass names in ``_fixed_qka_type``
    (SpikingJelly's two subclasses): the arguments of :class:`QKAttention` but that one."""

    _fixed_qka_type: ClassVar[str]

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        attention_threshold: float = 0.5,
        neuron: Any = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(dim, num_heads, self._fixed_qka_type, attention_threshold, neuron,
                         neuron_kwargs, step_mode)  # fmt: skip


class TokenQKAttention(_FixedQKAttention):
    """Q-K token attention (QKTA): :class:`QKAttention` with ``qka_type="token"``.

    SpikingJelly 2.0's ``layer.TokenQKAttention``; arguments as :class:`QKAttention`.
    """

    _fixed_qka_type = "token"


class ChannelQKAttention(_FixedQKAttention):
    """Q-K channel attention (QKCA): :class:`QKAttention` with ``qka_type="channel"``.

    SpikingJelly 2.0's ``layer.ChannelQKAttention``; arguments as :class:`QKAttention`.
    """

    _fixed_qka_type = "channel"
