"""The spiking RWKV block of SpikeGPT (Zhu, Zhao, Li & Eshraghian 2023).

RWKV (Peng et al. 2023) replaces attention by a recurrence over tokens; SpikeGPT puts
spiking neurons on its residual branches, with the token sequence as the neurons' time
axis. Tensors are time-major, ``[T, B, C]`` with ``T`` the tokens.

* :class:`RWKVTimeMix` (SpikeGPT's "spiking RWKV" token mixer): token shift (each
  projection reads a learned per-channel mix of this token and the previous one), the
  receptance, key and value projections, the WKV recurrence (:mod:`~spikeflow.layers.wkv`,
  per-channel decay ``w = exp(time_decay)`` and bonus ``u = time_first``), the gate
  ``sigmoid(r) ⊙ wkv`` and an output projection.
* :class:`RWKVChannelMix` (the "spiking receptance feed-forward network"): token shift,
  ``sigmoid(W_r x_r) ⊙ W_v (relu(W_k x_k))²`` with a hidden width ``ffn_mult · C``.
* :class:`SpikingRWKVBlock`: ``x ← x + SN₁(TimeMix(LN₁(x)))``, then
  ``x ← x + SN₂(ChannelMix(LN₂(x)))`` (with a LayerNorm ``LN₀`` on the first block's
  input), where ``SN`` are spiking neurons: their binary spikes are what each branch
  adds to the residual stream. With ``neuron=None`` the neurons are left out (the
  identity): the block is then RWKV-4's.

The receptance gates, the squared ReLU and the WKV stay real-valued inside each branch,
as in SpikeGPT's code; the binary activations are the branch outputs (and the
embedding, see :class:`~spikeflow.models.spike_gpt.SpikeGPT`).

Each mixer is a :class:`~spikeflow.base.MemoryModule`: a plain call starts from the
empty state (the previous token is zeros, no token seen), and under
:func:`~spikeflow.functional.streaming` or :func:`~spikeflow.functional.run` it carries
the previous token (``shift``) and the WKV state (``num``, ``den``, ``log_scale``), so a
sequence fed in chunks, or token by token, gives the whole sequence's outputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers.wkv import wkv_sequence

__all__ = ["RWKVChannelMix", "RWKVTimeMix", "SpikingRWKVBlock"]


def _layer_ratios(layer_id: int, n_layers: int) -> tuple[float, float]:
    """RWKV's depth ratios: 0 → 1 over the layers, and 1 → about 0."""
    check_int("n_layers", n_layers, 1)
    if not 0 <= layer_id < n_layers:
        raise ConfigurationError(f"layer_id must be in [0, {n_layers}); got {layer_id}")
    rising = layer_id / (n_layers - 1) if n_layers > 1 else 0.0
    return rising, 1.0 - layer_id / n_layers


def _channel_ramp(d_model: int) -> Tensor:
    """``h / C`` for channel ``h``: the base of RWKV's token-shift mixes."""
    return torch.arange(d_model, dtype=torch.get_default_dtype()) / d_model


class _TokenShiftMixer(MemoryModule):
    """Shared input handling and token shift of the two mixers."""

    def __init__(self, d_model: int, step_mode: StepMode) -> None:
        super().__init__(step_mode)
        self.d_model = check_int("d_model", d_model, 1)

    def _sequence(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            found = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise DTypeError(f"{name} expects a floating-point tensor, got {found}")
        dims, form = (3, "[T, B, d_model]") if self.step_mode == "m" else (2, "[B, d_model]")
        if x.dim() != dims or x.shape[-1] != self.d_model or x.numel() == 0:
            raise ShapeError(
                f"{name} (step_mode={self.step_mode!r}) expects a non-empty {form} with "
                f"d_model = {self.d_model}; got shape {tuple(x.shape)}"
            )
        return x if self.step_mode == "m" else x.unsqueeze(0)

    @staticmethod
    def _shifted(seq: Tensor, start: dict[str, Tensor] | None) -> Tensor:
        """The previous token of each token: the carried one (zeros) first."""
        first = start["shift"] if start is not None else torch.zeros_like(seq[0])
        return torch.cat([first.unsqueeze(0), seq[:-1]])

    def _out(self, y: Tensor) -> Tensor:
        return y if self.step_mode == "m" else y[0]


class RWKVTimeMix(_TokenShiftMixer):
    """RWKV's time mixing with the WKV recurrence: ``[T, B, C]`` → ``[T, B, C]``.

    ``x_k = μ_k ⊙ x_t + (1 - μ_k) ⊙ x_{t-1}`` (likewise ``x_v``, ``x_r``);
    ``k = W_k x_k``, ``v = W_v x_v``, ``r = W_r x_r`` (no biases);
    output ``W_o (sigmoid(r) ⊙ wkv(w, u, k, v))`` (see :mod:`~spikeflow.layers.wkv`).

    Args:
        d_model: channels ``C``.
        layer_id, n_layers: this block's index and the depth, for RWKV's depth-dependent
            initialisation: ``time_decay[h] = -5 + 8 (h/(C-1))^(0.7 + 1.3 l/(L-1))``
            (so ``w = exp(time_decay)`` spans slow to fast channels),
            ``time_first = log 0.3`` plus a ``±0.5`` zigzag over channels, and the token
            shift mixes ``μ = (h/C)^(1 - l/L)`` (``μ_v`` + ``0.3 l/(L-1)``,
            ``μ_r = (h/C)^((1 - l/L)/2)``).
        chunk: tokens per parallel chunk of :func:`~spikeflow.layers.wkv.wkv_sequence`.
        step_mode: ``'m'`` (default, ``[T, B, C]``) or ``'s'`` (``[B, C]``, streaming).
    """

    def __init__(
        self,
        d_model: int,
        layer_id: int = 0,
        n_layers: int = 1,
        chunk: int = 8,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(d_model, step_mode)
        self.chunk = check_int("chunk", chunk, 1)
        rising, falling = _layer_ratios(layer_id, n_layers)
        span = torch.arange(d_model, dtype=torch.get_default_dtype()) / max(d_model - 1, 1)
        self.time_decay = nn.Parameter(-5.0 + 8.0 * span ** (0.7 + 1.3 * rising))
        zigzag = 0.5 * ((torch.arange(d_model) + 1) % 3 - 1).to(span.dtype)
        self.time_first = nn.Parameter(math.log(0.3) + zigzag)
        ramp = _channel_ramp(d_model)
        self.time_mix_k = nn.Parameter(ramp**falling)
        self.time_mix_v = nn.Parameter(ramp**falling + 0.3 * rising)
        self.time_mix_r = nn.Parameter(ramp ** (0.5 * falling))
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.output = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, d_model]`` (or one token ``[B, d_model]``) → the same shape."""
        seq = self._sequence(x)
        start = self._carried_state(seq.shape[1:])
        prev = self._shifted(seq, start)

        def mixed(mu: Tensor) -> Tensor:
            return seq * mu + prev * (1 - mu)

        k = self.key(mixed(self.time_mix_k))
        v = self.value(mixed(self.time_mix_v))
        gate = torch.sigmoid(self.receptance(mixed(self.time_mix_r)))
        state = None if start is None else (start["num"], start["den"], start["log_scale"])
        # the WKV runs in float32 at least (as SpikeGPT's kernel): under bfloat16/float16
        # autocast, or in a half-precision model, k and v come in lower than the decay
        work = torch.promote_types(k.dtype, torch.float32)
        decay = torch.exp(self.time_decay.to(work))
        wkv, end = wkv_sequence(
            decay, self.time_first.to(work), k.to(work), v.to(work), state, self.chunk
        )
        if self._carrying:
            self._keep_state({"shift": seq[-1], "num": end[0], "den": end[1], "log_scale": end[2]})
        return self._out(self.output(gate * wkv.to(gate.dtype)))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, chunk={self.chunk}, step_mode={self.step_mode}"


class RWKVChannelMix(_TokenShiftMixer):
    """RWKV's channel mixing, SpikeGPT's receptance feed-forward network:
    ``sigmoid(W_r x_r) ⊙ W_v relu(W_k x_k)²`` with token-shifted ``x_k``, ``x_r``
    (as :class:`RWKVTimeMix`'s); ``[T, B, C]`` → ``[T, B, C]``.

    Args:
        d_model: channels ``C``.
        layer_id, n_layers: for the token-shift initialisation ``μ = (h/C)^(1 - l/L)``.
        ffn_mult: hidden width ``ffn_mult · C`` (RWKV's and SpikeGPT's 4).
        step_mode: ``'m'`` (default) or ``'s'``.
    """

    def __init__(
        self,
        d_model: int,
        layer_id: int = 0,
        n_layers: int = 1,
        ffn_mult: int = 4,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(d_model, step_mode)
        hidden = check_int("ffn_mult", ffn_mult, 1) * self.d_model
        _, falling = _layer_ratios(layer_id, n_layers)
        ramp = _channel_ramp(d_model)
        self.time_mix_k = nn.Parameter(ramp**falling)
        self.time_mix_r = nn.Parameter(ramp**falling)
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, d_model]`` (or one token ``[B, d_model]``) → the same shape."""
        seq = self._sequence(x)
        start = self._carried_state(seq.shape[1:])
        prev = self._shifted(seq, start)
        xk = seq * self.time_mix_k + prev * (1 - self.time_mix_k)
        xr = seq * self.time_mix_r + prev * (1 - self.time_mix_r)
        hidden = torch.square(torch.relu(self.key(xk)))
        if self._carrying:
            self._keep_state({"shift": seq[-1]})
        return self._out(torch.sigmoid(self.receptance(xr)) * self.value(hidden))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, step_mode={self.step_mode}"


class SpikingRWKVBlock(nn.Module):
    """``x ← x + SN₁(TimeMix(LN₁(x)))``, ``x ← x + SN₂(ChannelMix(LN₂(x)))``, dropout
    (module docstring); the first block (``layer_id`` 0) normalises its input first.

    Input and output ``[T, B, d_model]`` (multi-step: the neurons and mixers run over
    the tokens as time steps).

    Args:
        d_model, layer_id, n_layers: width, index and depth (the mixers' initialisation).
        neuron_att, neuron_ffn: the spiking neurons of the two branches (multi-step
            modules, fresh ones each); None for both leaves them out (RWKV-4).
        ffn_mult: the channel mix's hidden width factor.
        dropout: dropout on the block's output (SpikeGPT's code: 0.03).
        chunk: the WKV's parallel chunk.
    """

    def __init__(
        self,
        d_model: int,
        layer_id: int = 0,
        n_layers: int = 1,
        neuron_att: nn.Module | None = None,
        neuron_ffn: nn.Module | None = None,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        chunk: int = 8,
    ) -> None:
        super().__init__()
        if (neuron_att is None) != (neuron_ffn is None):
            raise ConfigurationError("give both neurons (spiking block) or neither (RWKV-4)")
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"dropout must be in [0, 1); got {dropout}")
        self.ln0 = nn.LayerNorm(d_model) if layer_id == 0 else nn.Identity()
        self.ln1 = nn.LayerNorm(d_model)
        self.att = RWKVTimeMix(d_model, layer_id, n_layers, chunk)
        self.neuron_att = neuron_att if neuron_att is not None else nn.Identity()
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = RWKVChannelMix(d_model, layer_id, n_layers, ffn_mult)
        self.neuron_ffn = neuron_ffn if neuron_ffn is not None else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.spiking = neuron_att is not None

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, d_model]`` → ``[T, B, d_model]``."""
        x = self.ln0(x)
        x = x + self.neuron_att(self.att(self.ln1(x)))
        x = x + self.neuron_ffn(self.ffn(self.ln2(x)))
        return self.dropout(x)

    def extra_repr(self) -> str:
        return f"spiking={self.spiking}"
