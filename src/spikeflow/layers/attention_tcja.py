"""TCJA: temporal-channel joint attention (Zhu et al., IEEE TNNLS 2024, "TCJA-SNN").

One score per sample, time step and channel, from the sequence's spatial means, by two
1-D convolutions over the ``[T, C]`` matrix of each sample, multiplied ("cross
convolutional fusion") and squashed by a sigmoid. With ``X ∈ [T, B, C, ...]`` and
``Z[b, t, c] = mean X[t, b, c, ...]`` (over the spatial dims, if any):

    ``A_t[b] = conv1d(Z[b], W_t)``  (``T`` input and output channels, length ``C``:
    every step mixed, a window of ``kernel_size_t`` neighbouring channels),
    ``A_c[b] = conv1d(Z[b]ᵀ, W_c)ᵀ``  (``C`` input and output channels, length ``T``:
    every channel mixed, a window of ``kernel_size_c`` neighbouring steps),
    ``S = σ(A_t ⊙ A_c)``,  ``Y[t, b, c, ...] = S[b, t, c] · X[t, b, c, ...]``.

Both convolutions have no bias and "same" zero padding (PyTorch's ``padding='same'``:
for an even kernel one more zero on the right than on the left). Defined by the
authors' code (``ridgerchu/TCJA``, ``src/tcja.py`` and ``layer.TCJA`` of their bundled
SpikingJelly, commit 7ce81ec; the multi-step class there cannot run, a stray comma
making ``self.conv`` a tuple, so its working ``TCJA_for_TET`` fixes the order of the
operations). Their DVS128 Gesture network uses ``TCJA(4, 4, T=20, channel=128)``
after a conv-BN-LIF block, before the max-pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.layers.attention_temporal import (
    _check_input,
    _check_size,
    _step_layout,
    _WholeSequence,
)

__all__ = ["TCJA"]


def _same_pad(x: Tensor, kernel_size: int) -> Tensor:
    """``x`` ``[B, channels, L]`` zero-padded so a conv of ``kernel_size`` keeps ``L``:
    ``(k - 1) // 2`` zeros on the left, the rest on the right (torch's ``"same"``)."""
    left = (kernel_size - 1) // 2
    return F.pad(x, (left, kernel_size - 1 - left))


class TCJA(_WholeSequence, nn.Module):
    """Temporal-channel joint attention (TCJA-SNN): a score per step and channel.

    ``Y[t, b, c, ...] = σ(A_t ⊙ A_c)[b, t, c] · X[t, b, c, ...]`` with the temporal and
    channel convolutions of the module docstring over the spatial means of ``X``.

    Parameters, as the authors' code names and shapes them: ``conv.weight``
    ``[T, T, kernel_size_t]`` (the "temporal-wise local attention" branch) and
    ``conv_c.weight`` ``[C, C, kernel_size_c]``, initialised as ``nn.Conv1d``'s.

    Args:
        T: the number of time steps of the input.
        channels: ``C``, the input's channels (its dimension 2).
        kernel_size_t: the window over channels of the conv with ``T`` channels
            (default 2, the authors' default; their Gesture net uses 4).
        kernel_size_c: the window over steps of the conv with ``C`` channels (default 1).
        dimension: dims of one step ``[B, C, ...]``: 4 for ``[T, B, C, H, W]`` (default),
            2 for ``[T, B, C]``, 3 for ``[T, B, C, L]`` (any number >= 2).

    Input and output ``[T, B, C, ...]`` (real values: currents or spikes).

    Raises:
        ConfigurationError: an argument that is not an int >= 1 (``dimension``: >= 2).
        ShapeError: an input without ``dimension + 1`` dims, ``T`` steps or ``C`` channels.
        DTypeError: a non-floating input.
    """

    def __init__(
        self,
        T: int,
        channels: int,
        kernel_size_t: int = 2,
        kernel_size_c: int = 1,
        dimension: int = 4,
    ) -> None:
        super().__init__()
        owner = "TCJA"
        self.T = check_int(f"{owner}: T", T, 1)
        self.channels = check_int(f"{owner}: channels", channels, 1)
        self.kernel_size_t = check_int(f"{owner}: kernel_size_t", kernel_size_t, 1)
        self.kernel_size_c = check_int(f"{owner}: kernel_size_c", kernel_size_c, 1)
        self.dimension = check_int(f"{owner}: dimension", dimension, 2)
        # (padded by hand in "same" fashion: torch warns at each even-kernel "same" call)
        self.conv = nn.Conv1d(T, T, kernel_size_t, bias=False)
        self.conv_c = nn.Conv1d(channels, channels, kernel_size_c, bias=False)

    def scores(self, x_seq: Tensor) -> Tensor:
        """The scores ``S`` ``[B, T, C]`` for ``x_seq`` (``[T, B, C, ...]``)."""
        _check_input("TCJA", x_seq, _step_layout(self.dimension), self.dimension)
        _check_size("TCJA", x_seq, 0, "T (steps)", self.T)
        _check_size("TCJA", x_seq, 2, "channels", self.channels)
        z = x_seq.flatten(3).mean(3) if x_seq.dim() > 3 else x_seq  # [T, B, C]
        z = z.transpose(0, 1)  # [B, T, C]
        along_channels = self.conv(_same_pad(z, self.kernel_size_t))  # [B, T, C]
        along_steps = self.conv_c(_same_pad(z.transpose(1, 2), self.kernel_size_c))
        along_steps = along_steps.transpose(1, 2)  # [B, T, C]
        return torch.sigmoid(along_channels * along_steps)

    def forward(self, x_seq: Tensor) -> Tensor:
        """``[T, B, C, ...]`` -> ``[T, B, C, ...]``: each step and channel times its score."""
        s = self.scores(x_seq).transpose(0, 1)  # [T, B, C]
        return x_seq * s.reshape(*s.shape, *(1,) * (x_seq.dim() - 3))

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, channels={self.channels}, kernel_size_t={self.kernel_size_t}, "
            f"kernel_size_c={self.kernel_size_c}, dimension={self.dimension}"
        )
